"""The pinned releases of the cluster stack, and the SHA-256 of every file the cache holds.

Beam 2.62.0 is the newest release whose Flink and Spark runner libraries *and* their job-service dependency
(``beam-runners-java-job-service``) Maven Central serves here; Beam's shaded ``*-job-server`` jars are not served
for any release, so ``cluster/*/pom.xml`` builds them. The Python SDK is pinned to the same release
(``requirements.txt``): job server and SDK harness speak one Beam version.
"""
BEAM_VERSION = "2.62.0"
FLINK_VERSION = "1.19.0"  # the Flink release beam-runners-flink-1.19:2.62.0 is built against
SPARK_VERSION = "3.5.0"  # Beam's Spark 3 runner is tested on 3.5.0; Java 17 needs Spark 3.3 or newer
SCALA_BINARY_VERSION = "2.12"

# PyPI files the engines come from (their bin/, conf/ and lib/ directories; nothing is pip-installed).
# name: (requirement, sha256, pip download flags)
DISTRIBUTIONS = {
    "flink-scripts": (f"apache-flink=={FLINK_VERSION}",
                      "fb607231f5c80ff232ab67925a1df7f8784c99e153c283f464cf59e0ef5873b5",
                      ["--only-binary=:all:", "--python-version=3.11", "--implementation=cp",
                       "--platform=manylinux1_x86_64"]),
    "flink-libraries": (f"apache-flink-libraries=={FLINK_VERSION}",
                        "bb3115c1c63702f95c3f89d5d952e9d98e26fd35b980a265d139790a6ea2c2a2",
                        ["--no-binary=:all:"]),
    "spark": (f"pyspark=={SPARK_VERSION}",
              "d41a9b76bd2aca370a6100d075c029e22ba44c5940927877e9435a3a9c566558",
              ["--no-binary=:all:"]),
}

# Job-server jars built by Maven from cluster/<name>/pom.xml: name -> (jar file name, sha256 of the jar).
JOB_SERVERS = {
    "flink-job-server": (f"beam-flink-1.19-job-server-{BEAM_VERSION}.jar",
                         "c1fa9e13c9235f4a225f4c5aa82c2bd6908c9a66e1c9c04c2fdfbd10888fccac"),
    "spark-job-server": (f"beam-spark-3-job-server-{BEAM_VERSION}.jar",
                         "b0bcf11c52621dc34708d7d6f1c3dbe5f3f4cc141a72ad378398c0ca890e55d1"),
}
