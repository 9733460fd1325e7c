"""Development stand-ins, shipped but imported by no service: the traffic simulator, its
population model and the fake WeChat/WeCom HTTP API (docs/architecture.md, "Layout")."""
