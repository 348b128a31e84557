"""`usp evaluate`: USP against baselines on real and synthetic series, with scorers written from their
published definitions (forecast: MASE, coverage, Winkler; change points: F1 and covering after van den
Burg & Williams 2020; anomalies: a NAB-style score after Lavin & Ahmad 2015)."""
