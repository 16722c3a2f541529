package appconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// updateAttempts bounds the compare-and-swap retries of Update when other
// writers keep changing the same app.
const updateAttempts = 10

// ErrNoApp is returned by Update for an app with no config.
var ErrNoApp = errors.New("appconfig: no such app")

// Update reads app's config, applies change to it and writes it back only
// if nobody changed the key in between (an etcd transaction comparing the
// key's mod revision); on a conflict it reads again and re-applies change,
// so concurrent edits of different settings both land. It returns the
// stored config.
func Update(ctx context.Context, cli *clientv3.Client, cluster, app string, change func(*App) error) (App, error) {
	key := Prefix(cluster) + app
	for attempt := 0; attempt < updateAttempts; attempt++ {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return App{}, fmt.Errorf("appconfig: get %s: %w", app, err)
		}
		if len(resp.Kvs) == 0 {
			return App{}, fmt.Errorf("%w %q in cluster %s (create it with app put)", ErrNoApp, app, cluster)
		}
		kv := resp.Kvs[0]
		var a App
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return App{}, fmt.Errorf("appconfig: %s holds malformed JSON: %w", key, err)
		}
		if err := change(&a); err != nil {
			return App{}, err
		}
		if a.Name != app {
			return App{}, fmt.Errorf("appconfig: update of %s renamed it to %q", app, a.Name)
		}
		if err := a.Validate(); err != nil {
			return App{}, err
		}
		b, err := json.Marshal(a)
		if err != nil {
			return App{}, fmt.Errorf("appconfig: encode %s: %w", app, err)
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(b))).
			Commit()
		if err != nil {
			return App{}, fmt.Errorf("appconfig: update %s: %w", app, err)
		}
		if txn.Succeeded {
			return a, nil
		}
	}
	return App{}, fmt.Errorf("appconfig: update %s: changed by others %d times in a row; try again", app, updateAttempts)
}
