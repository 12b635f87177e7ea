"""Generated code for Berth's own protos (`protos/`); regenerate with `make protos`."""
