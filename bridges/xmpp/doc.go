// Package xmpp is feedbridge's XMPP adapter (work in progress).
package xmpp
