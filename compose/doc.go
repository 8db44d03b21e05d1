// Package compose loads compose files with compose-go exactly as docker compose does and converts them to cluster/api specs.
package compose
