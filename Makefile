# The two entry points (see README.md), plus the checks CI runs.
.PHONY: demo test lint crds ci cluster-up cluster-down

demo:          ## the main job: cluster, CRDs, operator, examples, a crisis and its exit
	hack/demo

test:          ## every test: unit, property, and integration against the local control plane
	hack/test

lint:          ## formatting and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

crds:          ## regenerate crds/ from the Rust types, and the chart's and kustomize base's copies
	cargo run --locked --quiet --bin crdgen
	hack/sync-chart-crds.sh

ci:            ## what .ci/run runs
	.ci/run

cluster-up:
	hack/cluster up

cluster-down:
	hack/cluster down
