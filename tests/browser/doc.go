// Package browser holds the tests of ledgerq's real-time edge as a user meets
// it: a headless Chromium (driven with chromedp) opens the live dashboard of
// the real binary and watches the numbers move while the test publishes,
// receives and acknowledges over the HTTP API; and, on request
// (LEDGERQ_SSE_FIGURES=1), a measurement of 1,000 concurrent SSE subscribers
// — delivery latency, memory per subscriber and the publish rate they cost.
//
// The package has no code outside its tests; this file only names it.
package browser
