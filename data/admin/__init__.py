"""Real administrative data: SSDA903 (children looked after) and CIN census extracts.

``roles``       the user's LA role table (pilot / comparator, adoption date, settling-in years)
``validation``  schema checks that raise :class:`data.errors.DataError` naming file, row, column
``ssda903``     SSDA903 header + episodes -> child-level kinship frame for the DiD
``cin``         CIN census flat file -> re-referral, escalation, assessment duration frames
``sdc``         statistical disclosure control for every table written from these data
``writer``      synthetic SSDA903 / CIN files with known truth (tests, benchmarks, demos)
``codes``       DfE code lists and the English LA code reference
"""
