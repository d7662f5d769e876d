#!/usr/bin/env bash
# Fetches the jars of Apache Kafka's server (org.apache.kafka:kafka_2.13 and what it needs, plus
# the logging binding the release ships) from Maven Central into .cache/kafka/<version>/libs/
# (ignored by git), once per version, and prints each version's libs folder, one a line.
#
#   scripts/kafka.sh            -> every version pinned in scripts/kafka-versions
#   scripts/kafka.sh 4.4.0      -> that version only
#
# Maven keeps its downloads in its own user cache (~/.m2), so a second fetch on the machine (a
# fresh clone, CI) copies instead of downloading. A finished folder holds a `.complete` marker;
# with it the script only prints the folder. The tests (tests/src/kafka.rs) run the server as
# `java -cp '<libs>/*' kafka.Kafka server.properties`.
#
# Logging: the Maven artifact names no slf4j binding (the release's tarball adds one), so it is
# added here, at the version the release already uses: log4j-slf4j-impl at its log4j-core's
# version (4.x, log4j2), or slf4j-reload4j at its slf4j-api's version (3.x, log4j 1 API).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
plugin=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

if [ $# -gt 0 ]; then
  versions=("$@")
else
  mapfile -t versions < <(grep -v '^[[:space:]]*\(#\|$\)' "$here/scripts/kafka-versions" | tr -d '[:blank:]')
fi

# pom GROUP:ARTIFACT:VERSION...: a throwaway project depending on the given artifacts.
pom() {
  local deps="" gav g a v
  for gav in "$@"; do
    IFS=: read -r g a v <<<"$gav"
    deps+="<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
  done
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eventbus.tests</groupId><artifactId>kafka-server-jars</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies>$deps</dependencies>
</project>
POM
}

# copy DIR GAV...: the artifacts and their runtime dependencies into DIR/libs.
copy() {
  local dir="$1"; shift
  pom "$@" >"$dir/pom.xml"
  if ! mvn -B -q -f "$dir/pom.xml" "$plugin:copy-dependencies" -DincludeScope=runtime \
    -DoutputDirectory="$dir/libs" >"$dir/mvn.log" 2>&1; then
    cat "$dir/mvn.log" >&2
    echo "error: Maven could not fetch $* (log above)" >&2
    exit 1
  fi
}

# The version in a jar's file name, e.g. `jar_version DIR log4j-core` -> 2.25.5.
jar_version() {
  local f
  f="$(find "$1" -maxdepth 1 -name "$2-[0-9]*.jar" -printf '%f\n' | head -1)"
  f="${f#"$2"-}"
  echo "${f%.jar}"
}

# One fetch at a time (`./dev setup` and a test may both ask).
mkdir -p "$here/.cache/kafka"
exec 9>"$here/.cache/kafka/.lock"
flock 9

for version in "${versions[@]}"; do
  out="$here/.cache/kafka/$version"
  if [ ! -f "$out/libs/.complete" ]; then
    command -v java >/dev/null || { echo "error: Kafka needs Java 17 or newer (java)" >&2; exit 1; }
    command -v mvn >/dev/null || { echo "error: fetching Kafka's jars needs Maven (mvn)" >&2; exit 1; }
    echo "==> fetching Apache Kafka $version's jars from Maven Central" >&2
    rm -rf "$out"
    mkdir -p "$out/libs"
    copy "$out" "org.apache.kafka:kafka_2.13:$version"
    log4j="$(jar_version "$out/libs" log4j-core)"
    slf4j="$(jar_version "$out/libs" slf4j-api)"
    if [ -n "$log4j" ]; then
      binding="org.apache.logging.log4j:log4j-slf4j-impl:$log4j"
      [[ "$slf4j" == 1.* ]] || binding="org.apache.logging.log4j:log4j-slf4j2-impl:$log4j"
    else
      binding="org.slf4j:slf4j-reload4j:$slf4j"
    fi
    mkdir -p "$out/binding"
    copy "$out/binding" "$binding"
    cp -n "$out/binding/libs/"*.jar "$out/libs/"
    rm -rf "$out/binding"
    touch "$out/libs/.complete"
  fi
  echo "$out/libs"
done
