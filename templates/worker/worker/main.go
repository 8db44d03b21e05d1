// Command worker is the starter's consumer: it takes jobs off the queue (BRPOP
// on a Redis list, so several replicas share the work, each job going to one of
// them), processes them and records the result for the api to show.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Keys shared with the api.
const (
	queueKey = "jobs"      // list: the api LPUSHes, workers BRPOP
	doneKey  = "jobs:done" // list: ids of finished jobs, latest first
)

func jobKey(id string) string { return "job:" + id }

func main() {
	addr := envOr("QUEUE_ADDR", "queue:6379")
	name, _ := os.Hostname()
	q := newRedis(addr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Printf("worker %s: waiting for jobs on %s", name, addr)
	backoff := time.Second
	for ctx.Err() == nil {
		// Block for at most 2s, so that a stop signal is noticed quickly.
		kv, err := q.array(2*time.Second, "BRPOP", queueKey, "2")
		if errors.Is(err, errNil) {
			continue // nothing queued
		}
		if err != nil {
			log.Printf("worker %s: %v (retrying in %s)", name, err, backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = time.Second
		if len(kv) != 2 {
			log.Printf("worker %s: unexpected BRPOP reply %q", name, kv)
			continue
		}
		if err := handle(q, name, kv[1]); err != nil {
			log.Printf("worker %s: %v", name, err)
		}
	}
	log.Printf("worker %s: stopped", name)
}

// handle processes one job and records its result.
func handle(q *redis, worker, payload string) error {
	var job struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal([]byte(payload), &job); err != nil || job.ID == "" {
		return fmt.Errorf("drop malformed job %q: %v", payload, err)
	}
	start := time.Now()
	result := process(job.Text)
	if _, err := q.do(0, "HSET", jobKey(job.ID), "status", "done", "result", result, "worker", worker,
		"done_at", time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("record job %s: %w", job.ID, err)
	}
	if _, err := q.do(0, "LPUSH", doneKey, job.ID); err != nil {
		return fmt.Errorf("record job %s: %w", job.ID, err)
	}
	if _, err := q.do(0, "LTRIM", doneKey, "0", "99"); err != nil {
		return fmt.Errorf("record job %s: %w", job.ID, err)
	}
	log.Printf("worker %s: job %s done in %s", worker, job.ID, time.Since(start).Round(time.Microsecond))
	return nil
}

// process is the work itself; replace it with yours.
func process(text string) string {
	return fmt.Sprintf("%s (%d words)", strings.ToUpper(text), len(strings.Fields(text)))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
