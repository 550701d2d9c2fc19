// Package badinput is test support: it loads the shared hostile-input table
// (pkg/config/testdata/bad-inputs.json) and renders its cases as plugin
// stdin, for the unit test of config.Parse and the binary-level test in
// integration/ alike.
package badinput

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Case is one entry of the table.
type Case struct {
	Name    string            `json:"name"`
	Raw     *string           `json:"raw"`   // stdin verbatim, when set
	Set     map[string]any    `json:"set"`   // fields set over the base config
	Unset   []string          `json:"unset"` // fields removed from the base config
	Env     map[string]string `json:"env"`   // CNI_* overrides for the binary-level run
	Code    uint              `json:"code"`  // CNI code config.Parse must return
	Msg     string            `json:"msg"`   // text the message must contain
	BinCode uint              `json:"binCode"`
	BinMsg  *string           `json:"binMsg"`
	Level   string            `json:"level"` // "unit", "binary" or both when empty
}

// Table is the whole file.
type Table struct {
	Base  map[string]any `json:"base"`
	Cases []Case         `json:"cases"`
}

// Load reads the table; numbers stay exact (json.Number) so huge values
// reach the parser as written.
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Table
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &t, nil
}

// Stdin renders a case over the table's base config, with netns substituted
// for "@netns".
func (t *Table) Stdin(c Case, netns string) ([]byte, error) {
	if c.Raw != nil {
		return []byte(*c.Raw), nil
	}
	m := make(map[string]any, len(t.Base)+len(c.Set))
	for k, v := range t.Base {
		m[k] = v
	}
	for k, v := range c.Set {
		m[k] = v
	}
	for _, k := range c.Unset {
		delete(m, k)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.ReplaceAll(b.Bytes(), []byte("@netns"), []byte(netns)), nil
}
