"""App: the what-if explorer, a Panel page served on 127.0.0.1."""
