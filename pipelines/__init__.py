"""gen.pipelines: scoring inside data engines. `arrow` holds the one batch function the
engines share (Arrow / pandas batches in, the same rows with scores out): Ray Data's
`map_batches`, Spark's `mapInArrow` / `mapInPandas`, Dask's `map_partitions`. `ray` runs a
folder or glob of files through Ray Data (`gen score --engine ray`). Like the CLI's serving
commands, this package imports only the runtime (never torch); pyarrow, pandas and ray are
imported where they are used, from the `parquet` and `ray` extras."""
