#!/bin/sh
# Maps the add-on's options (/data/options.json) to Home Mind's settings; data stays in /data.
set -eu
options_file=/data/options.json
option() { jq -r --arg k "$1" '.[$k] // empty' "$options_file"; }

export HOMEMIND_MODE=self-hosted
export HOMEMIND_HOST=0.0.0.0
export HOMEMIND_PORT=8080
export HOMEMIND_DATA_DIR=/data
ANTHROPIC_API_KEY="$(option anthropic_api_key)"
HOMEMIND_MODEL="$(option model)"
HOMEMIND_MEMORY_EXTRACTION="$(option memory_extraction)"
HOMEMIND_LOG_LEVEL="$(option log_level | tr '[:lower:]' '[:upper:]')"
export ANTHROPIC_API_KEY HOMEMIND_MODEL HOMEMIND_MEMORY_EXTRACTION HOMEMIND_LOG_LEVEL

exec /opt/homemind/bin/homemind-server serve
