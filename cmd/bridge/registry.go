package main

import (
	"github.com/feedbridge/feedbridge/bridges/atom"
	"github.com/feedbridge/feedbridge/bridges/console"
	"github.com/feedbridge/feedbridge/bridges/irc"
	"github.com/feedbridge/feedbridge/bridges/rest"
	"github.com/feedbridge/feedbridge/bridges/xmpp"
	"github.com/feedbridge/feedbridge/core"
)

// registry lists every adapter, in start order. It is explicit: an adapter
// exists in the binary because it is named here.
var registry = []core.Factory{rest.Factory, atom.Factory, xmpp.Factory, irc.Factory, console.Factory}

func registryNames() []string {
	names := make([]string, len(registry))
	for i, f := range registry {
		names[i] = f.Name
	}
	return names
}
