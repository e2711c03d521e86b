"""gen.serving: `gen serve`, the Open Inference Protocol ("v2", as KServe, Triton and MLServer
speak it) over KServe's Python model server, with adaptive batching; and the Triton model
repository writer of `gen export --triton`. Like every serving path it imports only the
runtime (never torch); kserve is imported only where the server is built (`gen[serve]`)."""
