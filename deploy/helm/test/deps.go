// Package test renders the rollguard Helm chart with the Helm library and
// decodes what it renders strictly with the Kubernetes API types. It is a
// module of its own so that Helm and the Kubernetes types stay out of
// rollguard's build; `make test` runs it.
package test
