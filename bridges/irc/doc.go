// Package irc is feedbridge's IRC adapter (work in progress).
package irc
