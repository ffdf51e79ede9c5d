// Package atom is feedbridge's Atom adapter (work in progress).
package atom
