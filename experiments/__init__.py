"""The shipped experiment (scenario) files; packaged as ``ra_model._experiments`` so installs carry them."""
