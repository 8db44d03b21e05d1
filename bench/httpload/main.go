// Command httpload is a small closed-loop HTTP load generator for dev's
// benchmarks: C keep-alive connections send GETs back to back for a fixed
// duration, then it prints requests per second and latency percentiles.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to GET")
	conns := flag.Int("c", 16, "concurrent keep-alive connections")
	dur := flag.Duration("d", 5*time.Second, "duration of the measurement")
	warm := flag.Duration("warmup", time.Second, "warm-up before measuring")
	label := flag.String("label", "", "label printed with the result")
	rpsOnly := flag.Bool("rps", false, "print only the requests/s figure and the p99 in µs, space-separated (for scripts)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "httpload: -url is required")
		os.Exit(2)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	ctx, cancel := context.WithTimeout(context.Background(), *warm+*dur)
	defer cancel()
	start := time.Now().Add(*warm)
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
		once sync.Once
	)
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var myErrs int
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Get(*url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if t0.Before(start) {
					continue
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					if ctx.Err() == nil {
						myErrs++
						once.Do(func() {
							if err == nil {
								err = fmt.Errorf("status %s", resp.Status)
							}
							fmt.Fprintf(os.Stderr, "%s: first error: %v\n", *label, err)
						})
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errs += myErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(float64(len(lats))*p))]
	}
	if *rpsOnly {
		fmt.Printf("%.0f %.0f\n", float64(len(lats))/dur.Seconds(), float64(pct(0.99).Microseconds()))
		return
	}
	fmt.Printf("%-22s req/s %8.0f   p50 %7.0fµs   p99 %7.0fµs   errors %d\n", *label,
		float64(len(lats))/dur.Seconds(), float64(pct(0.50).Microseconds()), float64(pct(0.99).Microseconds()), errs)
}
