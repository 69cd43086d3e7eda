package runnerapi

import (
	"context"
	"testing"
	"time"

	"github.com/silofl/silo"
)

// TestHandoff: a task a driver queues goes to the runner's longest-waiting
// poll, at most once; a poll that left, or whose request ended, takes
// nothing, so the driver leaves the task in the queue for the next one.
func TestHandoff(t *testing.T) {
	var k waker
	ctx := context.Background()
	if k.claim(1) != nil {
		t.Fatal("a runner with no poll waiting was claimed")
	}

	// Two polls wait: the first gets the task, the second is still free.
	first, second := k.ready(1), k.ready(1)
	hand := k.claim(1)
	if hand == nil || !hand(&silo.Task{ID: "t1"}) {
		t.Fatal("a waiting poll did not take the task")
	}
	if got := k.leave(ctx, 1, first); got == nil || got.ID != "t1" {
		t.Fatalf("the first poll left with %v, want t1", got)
	}
	if got := k.leave(ctx, 1, second); got != nil {
		t.Fatalf("the second poll left with %v, want nothing", got)
	}
	if k.claim(1) != nil {
		t.Fatal("a poll that left was claimed")
	}

	// A poll claimed whose request then ends: the hand-over fails, and the
	// task is not lost in it.
	gone := k.ready(2)
	hand = k.claim(2)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if got := k.leave(ended, 2, gone); got != nil {
		t.Fatalf("an ended poll left with %v", got)
	}
	if hand(&silo.Task{ID: "t2"}) {
		t.Fatal("a poll whose request ended took a task")
	}

	// A claimed poll that leaves before the driver hands it anything waits
	// for the hand-over (the driver is about to send), then takes it.
	late := k.ready(3)
	hand = k.claim(3)
	done := make(chan *silo.Task)
	go func() { done <- k.leave(ctx, 3, late) }()
	select {
	case got := <-done:
		t.Fatalf("a claimed poll left with %v before the hand-over", got)
	case <-time.After(10 * time.Millisecond):
	}
	hand(&silo.Task{ID: "t3"})
	if got := <-done; got == nil || got.ID != "t3" {
		t.Fatalf("the claimed poll left with %v, want t3", got)
	}
}

// TestNotify: a task queued wakes the runner's polls waiting on its channel,
// not another runner's; notifyAll wakes every one.
func TestNotify(t *testing.T) {
	var k waker
	a, b := k.channel(1), k.channel(2)
	k.notify(1)
	select {
	case <-a:
	default:
		t.Fatal("runner 1's poll was not woken")
	}
	select {
	case <-b:
		t.Fatal("runner 2's poll was woken by runner 1's task")
	default:
	}
	if c := k.channel(1); c == a {
		t.Fatal("a woken channel was handed out again")
	}
	k.notifyAll()
	select {
	case <-b:
	default:
		t.Fatal("notifyAll did not wake runner 2's poll")
	}
}
