package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"zhianhub/crypto"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/audit"
)

// Audit actions of a start that finds the configuration or the keys
// changed since the previous start.
const (
	ActionConfigChange = "config.change"
	ActionKeyChange    = "key.change"
)

// keyInventory lists the key ids the hub runs with: its own signing and
// decryption keys and every peer's, by role. Only public identifiers.
func keyInventory(ks *keystore.Store) map[string][]string {
	ids := func(n int, at func(int) crypto.KeyID) []string {
		out := make([]string, 0, n)
		for i := range n {
			out = append(out, string(at(i)))
		}
		slices.Sort(out)
		return out
	}
	signers, unwrappers := ks.Signers(), ks.Unwrappers()
	inv := map[string][]string{
		"self.sign": ids(len(signers), func(i int) crypto.KeyID { return signers[i].KeyID() }),
		"self.enc":  ids(len(unwrappers), func(i int) crypto.KeyID { return unwrappers[i].KeyID() }),
	}
	for _, node := range ks.Peers() {
		p, _ := ks.Peer(node)
		var sign []string
		for id := range p.Sign {
			sign = append(sign, string(id))
		}
		slices.Sort(sign)
		inv["peer."+node+".sign"] = sign
		inv["peer."+node+".enc"] = ids(len(p.EncAll), func(i int) crypto.KeyID { return p.EncAll[i].KeyID() })
	}
	return inv
}

// startChanges compares the configuration and the keys of this start with
// those recorded by the previous successful start (its hub.start detail)
// and returns an audit entry for each that changed: config.change with the
// settings that differ, key.change with the key ids added and removed. The
// first start (no previous one) changes nothing.
func startChanges(ctx context.Context, q store.Querier, actor string, cfgPairs map[string]string, keys map[string][]string) ([]audit.Entry, error) {
	var raw []byte
	err := q.QueryRow(ctx, `SELECT detail FROM audit_entry WHERE action = 'hub.start' AND result = 'ok' ORDER BY seq DESC LIMIT 1`).Scan(&raw)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		return nil, fmt.Errorf("previous start: %w", err)
	}
	var prev struct {
		Config map[string]string   `json:"config"`
		Keys   map[string][]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &prev); err != nil {
		return nil, fmt.Errorf("previous start: %w", err)
	}
	var out []audit.Entry
	if prev.Config != nil {
		changed := map[string]any{}
		for k, v := range cfgPairs {
			if old, ok := prev.Config[k]; !ok || old != v {
				changed[k] = map[string]string{"from": old, "to": v}
			}
		}
		for k, old := range prev.Config {
			if _, ok := cfgPairs[k]; !ok {
				changed[k] = map[string]string{"from": old, "to": ""}
			}
		}
		if len(changed) > 0 {
			out = append(out, audit.Entry{Actor: actor, Action: ActionConfigChange, Object: "config", Result: "ok",
				Reason: fmt.Sprintf("%d settings changed since the previous start", len(changed)), Detail: changed})
		}
	}
	if prev.Keys != nil {
		added, removed := map[string][]string{}, map[string][]string{}
		for role, ids := range keys {
			for _, id := range ids {
				if !slices.Contains(prev.Keys[role], id) {
					added[role] = append(added[role], id)
				}
			}
		}
		for role, ids := range prev.Keys {
			for _, id := range ids {
				if !slices.Contains(keys[role], id) {
					removed[role] = append(removed[role], id)
				}
			}
		}
		if len(added) > 0 || len(removed) > 0 {
			out = append(out, audit.Entry{Actor: actor, Action: ActionKeyChange, Object: "keys", Result: "ok",
				Reason: "key set changed since the previous start", Detail: map[string]any{"added": added, "removed": removed}})
		}
	}
	return out, nil
}
