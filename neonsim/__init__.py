"""neonsim: a simulated Neon storage fleet (pageservers, safekeepers, computes, storage controller, S3).

A separate package from the collection; tests, demos and benchmarks run against it. Entry points:
`python -m neonsim {up,down,status,kill,start,fault,check}` and `python -m neonsim.node`.
"""

__version__ = "0.1.0"
