"""Network definitions in PyTorch (imported only by the torch backend and by training: needs torch)."""
