"""``pageqa eval``: MMLongBench-Doc questions run through pageqa (run, mmlongbench), scored by retrieval and answer
metrics (metrics) and reported (report); calibrate_extractive fits the offline answer threshold."""
