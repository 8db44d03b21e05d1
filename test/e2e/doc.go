// Package e2e holds dev's end-to-end tests: the real binary, a real agent and
// the real Docker Engine of this machine. Tests run one at a time.
package e2e
