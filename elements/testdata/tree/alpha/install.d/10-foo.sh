#!/bin/bash
set -eu
echo 10-foo.sh
