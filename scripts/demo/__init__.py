"""``pageqa demo``: a Gapminder chart corpus with gold answers (data), ingested, submitted and judged end to end
(run)."""
