package runnerapi

import (
	"context"
	"slices"
	"sync"

	"github.com/silofl/silo"
)

// waker wakes long-polls when a task is queued for their runner, and hands
// tasks a driver queued claimed to the polls ready to take them.
type waker struct {
	mu     sync.Mutex
	ch     map[int64]chan struct{}
	offers map[int64][]*handoff
}

// handoff is a long-poll ready to take a task handed to it.
type handoff struct {
	task chan *silo.Task // a task, or nil to look again; buffered
	mu   sync.Mutex
	gone bool // the poll's request ended: it takes nothing more
}

func (k *waker) channel(runnerID int64) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ch == nil {
		k.ch = map[int64]chan struct{}{}
	}
	c, ok := k.ch[runnerID]
	if !ok {
		c = make(chan struct{})
		k.ch[runnerID] = c
	}
	return c
}

func (k *waker) notify(runnerID int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.ch[runnerID]; ok {
		close(c)
		delete(k.ch, runnerID)
	}
}

// notifyAll wakes every long-poll: notices may have been missed.
func (k *waker) notifyAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, c := range k.ch {
		close(c)
		delete(k.ch, id)
	}
}

// ready offers a waiting poll of the runner to take a task handed to it.
func (k *waker) ready(runnerID int64) *handoff {
	h := &handoff{task: make(chan *silo.Task, 1)}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.offers == nil {
		k.offers = map[int64][]*handoff{}
	}
	k.offers[runnerID] = append(k.offers[runnerID], h)
	return h
}

// claim takes the runner's longest-waiting ready poll, if any, and returns
// how to hand it a task (nil: none after all, look again), which reports
// whether the poll took it.
func (k *waker) claim(runnerID int64) func(*silo.Task) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	list := k.offers[runnerID]
	if len(list) == 0 {
		return nil
	}
	h := list[0]
	if len(list) == 1 {
		delete(k.offers, runnerID)
	} else {
		k.offers[runnerID] = list[1:]
	}
	return func(t *silo.Task) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.gone {
			return false
		}
		h.task <- t // buffered, and sent at most once
		return t != nil
	}
}

// leave ends a poll's offer: it returns a task handed to it meanwhile. A
// poll already claimed waits for its task, unless its request ended.
func (k *waker) leave(ctx context.Context, runnerID int64, h *handoff) *silo.Task {
	k.mu.Lock()
	list := k.offers[runnerID]
	if i := slices.Index(list, h); i >= 0 {
		if len(list) == 1 {
			delete(k.offers, runnerID)
		} else {
			k.offers[runnerID] = slices.Delete(slices.Clone(list), i, i+1)
		}
		k.mu.Unlock()
		return nil
	}
	k.mu.Unlock()
	select {
	case t := <-h.task:
		return t
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = true
	select {
	case t := <-h.task:
		return t // handed over before the request ended: it is lost with it
	default:
		return nil
	}
}
