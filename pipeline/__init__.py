"""dmvr pipeline: sample → verify → train → evaluate → bucket → report, composed by Hydra."""
