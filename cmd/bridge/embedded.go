package main

import (
	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// startEmbedded starts the in-process Redis on addr. miniredis answers
// every COMMAND subcommand with the plain COMMAND table, which makes an
// interactive redis-cli abort on its first request (COMMAND DOCS, for its
// hints); here subcommands get the "unknown subcommand" error a Redis
// older than 7 gives, and redis-cli falls back to its built-in help.
func startEmbedded(addr string) (*miniredis.Miniredis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return nil, err
	}
	m.Server().SetPreHook(func(c *server.Peer, cmd string, args ...string) bool {
		if cmd == "COMMAND" && len(args) > 0 {
			c.WriteError("ERR unknown subcommand '" + args[0] + "'. Try COMMAND HELP.")
			return true
		}
		return false
	})
	return m, nil
}
