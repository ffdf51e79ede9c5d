package thoonk

import (
	"embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFS embed.FS

// scripts holds every Lua script, each prefixed with lua/prelude.lua.
var scripts = loadScripts()

type scriptSet struct {
	configSet, del                                        *redis.Script
	publish, retract                                      *redis.Script
	sortedInsert, sortedEdit, sortedMove, sortedRetract   *redis.Script
	queuePut, queueTake                                   *redis.Script
	jobPut, jobClaim, jobFinish, jobCancel, jobStall      *redis.Script
	jobRetry, jobRetract, jobRequeue, jobState, jobRecord *redis.Script
	jobRead                                               *redis.Script
	read, page                                            *redis.Script
	actionApply                                           *redis.Script
	journalObserve, journalRead, journalTrim              *redis.Script
	marksAdvance                                          *redis.Script
}

func loadScripts() *scriptSet {
	prelude := mustRead("prelude")
	s := func(name string) *redis.Script {
		return redis.NewScript(prelude + mustRead(name))
	}
	return &scriptSet{
		configSet:      s("config_set"),
		del:            s("delete"),
		publish:        s("publish"),
		retract:        s("retract"),
		sortedInsert:   s("sorted_insert"),
		sortedEdit:     s("sorted_edit"),
		sortedMove:     s("sorted_move"),
		sortedRetract:  s("sorted_retract"),
		queuePut:       s("queue_put"),
		queueTake:      s("queue_take"),
		jobPut:         s("job_put"),
		jobClaim:       s("job_claim"),
		jobFinish:      s("job_finish"),
		jobCancel:      s("job_cancel"),
		jobStall:       s("job_stall"),
		jobRetry:       s("job_retry"),
		jobRetract:     s("job_retract"),
		jobRequeue:     s("job_requeue"),
		jobState:       s("job_state"),
		jobRecord:      s("job_record"),
		jobRead:        s("job_read"),
		read:           s("read"),
		page:           s("page"),
		actionApply:    s("action_apply"),
		journalObserve: s("journal_observe"),
		journalRead:    s("journal_read"),
		marksAdvance:   s("marks_advance"),
		journalTrim:    s("journal_trim"),
	}
}

func mustRead(name string) string {
	b, err := luaFS.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic("thoonk: missing embedded script " + name)
	}
	return strings.TrimRight(string(b), "\n") + "\n"
}
