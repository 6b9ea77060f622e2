"""Filter rule overrides the tests share."""

# keep every PR with any logic at all: tests of the pipeline, not of the filter's thresholds
LOOSE_SUBSTANCE = ("[substance]\nmin_logic_lines = 1\ntested_min_logic_lines = 1\n"
                   "branchless_min_logic_lines = 0\n")
