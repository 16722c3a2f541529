// Package deploy's tests check the deployment files against the code: the
// compose file (../docker-compose.yml), the Kubernetes overlays (k8s/), the
// Grafana dashboard (grafana/) and the Prometheus alerts (prometheus/).
//
// They live here, beside the files they check, rather than in test/: most
// of them need no running cluster (they read the binaries' -h output and
// render the manifests), and `go test ./deploy/` is the one command to run
// after editing anything under deploy/. The dashboard check does start a
// cluster, with test.StartCluster like every integration test.
package deploy
