#!/bin/sh
# The image's entrypoint: runs the Procfile entry named by its one argument (web, worker,
# scheduler), read from ./Procfile (WORKDIR /app), so the Procfile stays the one place where the
# commands are written. The shell expands the entry's ${VARIABLE:-default}s and then becomes
# the command itself (exec): the command is process 1 and gets `docker stop`'s SIGTERM.
set -eu

usage() {
    names=$(sed -n 's/^\([A-Za-z0-9_-]*\): .*/\1/p' Procfile | tr '\n' ' ')
    echo "usage: docker-entrypoint NAME, one of the Procfile's entries: ${names% }" >&2
    exit 2
}

[ "$#" -eq 1 ] || usage
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        "$1: "*)
            command=${line#"$1: "}
            exec sh -c "exec $command"
            ;;
    esac
done <Procfile
usage
