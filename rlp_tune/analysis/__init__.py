"""Analysis of Parquet results: DuckDB queries, fits per design cell with bootstrap CIs, figures, HTML report.

    from rlp_tune.analysis.document import analyze
    from rlp_tune.analysis.query import run_query
    from rlp_tune.analysis.report import write_report
    from rlp_tune.analysis.text import format_analysis
    print(run_query("runs/sweep1", 'SELECT "rlp.lam", "test.acc" FROM final', fmt="table"))
    a = analyze("runs/sweep1"); print(format_analysis(a)); doc = a.to_dict()
    write_report("runs/sweep1", "reports/sweep1")        # → reports/sweep1/index.html (self-contained)

Modules, by layer (each imports only the ones above it):
  query      the `final` view and `rlp-tune query`, over rlp_tune.reader's DuckDB views
  tables     load the frames once; one row per trial          design   the design and its cells
  numerics   vendored, batched numerics (LM, B-splines, ranks) bootstrap  CIs, seeded generators
  identify   when a fit is identified; NotIdentified          numtext  numbers as text
  fits       the fit registry (FitKind: function, result type, text)
  fit_lambda / fit_memgen / fit_factors / fit_onset   the fits, each registering its kinds; evasion, regime
  search     a tuning search (tpe / random / qmc): best trials, history, importances (optuna.journal)
  document   Analysis: every fit, per cell (`analyze`)        findings / text   words and text
  figures    FigureInfo per figure (numbers only)             search_figures   the search's FigureInfos
  render     matplotlib (optional ax)
  report     the HTML page
The package imports nothing itself; heavy imports (duckdb, pandas, matplotlib) happen on first use. The
fits are numpy only (no scipy: its import alone cost ~1 s of every `rlp-tune analyze`).
docs/analysis.md documents the JSON document.
"""
