package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/screenpop/screenpop/dataverse"
)

// defaultAgentsFilePoll is how often GENESYS_AGENTS_FILE is looked at.
const defaultAgentsFilePoll = 5 * time.Second

// fileStamp is what tells that a file changed: replaced (mv), or written
// in place.
type fileStamp struct {
	info os.FileInfo
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	return fileStamp{fi}, err
}

func (s fileStamp) same(o fileStamp) bool {
	if s.info == nil || o.info == nil {
		return s.info == nil && o.info == nil
	}
	return os.SameFile(s.info, o.info) && s.info.Size() == o.info.Size() && s.info.ModTime().Equal(o.info.ModTime())
}

// watchAgentsFile applies GENESYS_AGENTS_FILE again when it changes, so
// that agents added to it are watched, and agents removed from it let go,
// without a restart. A change is read once the file has stayed the same
// for one look (an editor still writing it would have its half read); a
// file that does not read, names something that is not a user id, or no
// one at all changes nothing: the agents it named before stay watched.
func (m *Main) watchAgentsFile(ctx context.Context) error {
	path := m.Config.GenesysAgentsFile
	if path == "" {
		return nil
	}
	poll := m.Config.agentsFilePoll
	if poll <= 0 {
		poll = defaultAgentsFilePoll
	}
	log := m.Log.With().Str("component", "main").Logger()
	// The file is read at the first look: it may have changed since Open
	// read it. An unchanged list changes nothing and is not logged.
	current := m.staticAgents
	var applied, seen fileStamp // the stamp applied last, and the one seen at the last look
	var refused *fileStamp      // the stamp refused last, logged once
	logApplied := func(agents, added, removed int) {
		log.Info().Int("agents", agents).Int("added", added).Int("removed", removed).
			Msg("GENESYS_AGENTS_FILE applied: agents added to it are watched now (up to the channel limit), agents removed from it are let go once no call rings for them (unless a queue has them)")
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// A file system that hangs (an NFS server gone) holds the look,
		// not the stop: the pops go on meanwhile with the agents watched.
		st, err := unlessDone(ctx, func() (fileStamp, error) { return stampOf(path) })
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && st.same(applied) {
			seen = st
			if refused != nil {
				// Put back as it was applied (a broken copy moved
				// away, a symlink rolled back): the warning said the
				// edit waits to be fixed.
				logApplied(len(uniqueIDs(current)), 0, 0)
				refused = nil
			}
			continue
		}
		if !st.same(seen) {
			seen = st // changed since the last look: wait for it to settle
			continue
		}
		seen = st
		// Emptying the file stops watching everyone only when it is the
		// one source of agents; next to GENESYS_AGENTS or GENESYS_QUEUES it
		// removes the file's last agents, as a restart would.
		alone := len(m.Config.GenesysAgents) == 0 && len(m.Config.GenesysQueues) == 0
		statErr := err
		if m.Config.agentsFileRead != nil {
			m.Config.agentsFileRead()
		}
		ids, err := unlessDone(ctx, func() ([]string, error) { return readValidAgents(path, statErr, alone) })
		if ctx.Err() != nil {
			return nil
		}
		// A rewrite in place (`cmd > file`, cp, nano) that started after
		// the look was read empty or cut short: what was read is not what
		// was looked at. It is read again once it has settled, as any
		// change is, rather than applied (agents past the cut unwatched
		// until the next read) or refused with a warning about a file
		// that is fine.
		after, _ := unlessDone(ctx, func() (fileStamp, error) { return stampOf(path) })
		if ctx.Err() != nil {
			return nil
		}
		if !after.same(st) { // a file gone since, or back, differs too
			seen = after
			continue
		}
		if err == nil {
			ids = append(append([]string(nil), m.Config.GenesysAgents...), ids...)
			err = m.Genesys.SetAgents(ids)
		}
		if err != nil {
			if refused == nil || !st.same(*refused) {
				log.Warn().Err(err).Int("agents", len(uniqueIDs(current))).
					Msg("GENESYS_AGENTS_FILE changed but cannot be applied; the agents watched before stay watched until it is fixed")
			}
			refused = &st
			continue
		}
		// A file fixed after a refusal is logged even when it is back as
		// it was: the warning said the edit waits to be fixed.
		if added, removed := diffIDs(current, ids); added+removed > 0 || refused != nil {
			logApplied(len(uniqueIDs(ids)), added, removed)
		}
		current, applied, refused = ids, st, nil
	}
}

// unlessDone returns what f returns, run in a goroutine of its own, or
// ctx's error as soon as ctx ends: a read of a file on a hung file system
// (or a write to a stderr nobody reads: lastLine) leaves its goroutine
// waiting, not the caller.
func unlessDone[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

var errNoAgentsFile = errors.New("the file is gone")

// readValidAgents reads path as the agents file, refusing what would
// leave agents unwatched by mistake: a file gone, an id that is not a
// user id, a file naming no one when it is the only source (alone) of
// agents, an empty file.
func readValidAgents(path string, statErr error, alone bool) ([]string, error) {
	if statErr != nil {
		if errors.Is(statErr, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (deleted, or being replaced)", path, errNoAgentsFile)
		}
		return nil, statErr
	}
	ids, lines, err := readAgentsFileLines(path)
	if err != nil {
		return nil, err
	}
	for i, a := range ids {
		if !dataverse.IsGUID(a) {
			return nil, fmt.Errorf("line %d: %q is not a Genesys user id (a UUID); write one user id a line, not an email, a login name or other columns: Admin > People shows it in the user's URL", lines[i], a)
		}
	}
	if len(ids) == 0 {
		// Not one byte: a file being written (`cmd > file` empties it
		// first) rather than one emptied on purpose, which a comment says.
		if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
			return nil, fmt.Errorf("%s is empty (still being written?); to list no agent in it, leave a comment line such as # none", path)
		}
		if alone {
			return nil, fmt.Errorf("%s names no agent (to stop watching everyone, stop screenpopd)", path)
		}
	}
	return ids, nil
}

// diffIDs counts the ids of next not in prev, and of prev not in next.
func diffIDs(prev, next []string) (added, removed int) {
	in := make(map[string]bool, len(prev))
	for _, a := range prev {
		in[a] = true
	}
	now := make(map[string]bool, len(next))
	for _, a := range next {
		now[a] = true
		if !in[a] {
			added++
		}
	}
	for a := range in {
		if !now[a] {
			removed++
		}
	}
	return added, removed
}

// uniqueIDs returns ids without repeats.
func uniqueIDs(ids []string) map[string]bool {
	out := make(map[string]bool, len(ids))
	for _, a := range ids {
		out[a] = true
	}
	return out
}
