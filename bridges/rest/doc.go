// Package rest is feedbridge's REST adapter (work in progress).
package rest
