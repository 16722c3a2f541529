package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Load tests only ever talk to this machine: a typo in a flag must not turn
// the generator against a real host.
func checkLoopbackHost(host string) error {
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("target %q: give an IP literal in 127.0.0.0/8 (or localhost); host names are not resolved", host)
	}
	if v4 := ip.To4(); v4 == nil || v4[0] != 127 {
		return fmt.Errorf("target %q is not in 127.0.0.0/8; pushload only loads loopback targets", host)
	}
	return nil
}

// checkTCPAddrs validates a comma-separated list of host:port targets.
func checkTCPAddrs(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", a, err)
		}
		if err := checkLoopbackHost(host); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no target address given")
	}
	return out, nil
}

// checkURL validates an http:// URL on a loopback host.
func checkURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("url %q: want http://127.x.y.z:port", raw)
	}
	if err := checkLoopbackHost(u.Hostname()); err != nil {
		return "", err
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// checkSourceIPs validates the optional local addresses to bind.
func checkSourceIPs(list string) ([]net.IP, error) {
	var out []net.IP
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if err := checkLoopbackHost(s); err != nil || s == "localhost" {
			return nil, fmt.Errorf("-src %q: want IP literals in 127.0.0.0/8", s)
		}
		out = append(out, net.ParseIP(s))
	}
	return out, nil
}
