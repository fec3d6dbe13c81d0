"""Local Flink and Spark clusters for the tests and ``make cluster-demo`` (not shipped with the package).

``versions``: the pinned engine releases and files; ``prepare``: downloads and builds them once into a cache;
``local``: starts and stops the clusters' processes on 127.0.0.1.
"""
