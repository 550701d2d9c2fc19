// Package codeshape holds tests of the code's shape rather than its
// behaviour: rules the architecture relies on, checked on every make test
// so that they stay true.
package codeshape

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// maxFuncLines bounds a function in pkg/ and plugins/: a verb reads as its
// steps, each step fits on a screen.
const maxFuncLines = 60

// netlinkDoors are the only packages that may import vishvananda/netlink:
// kernel converts to and from plain plan data, linkwait subscribes to link
// events for it.
var netlinkDoors = map[string]bool{"pkg/kernel": true, "pkg/linkwait": true}

// sources parses every non-test Go file under pkg/ and plugins/.
func sources(t *testing.T, mode parser.Mode) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, root := range []string{"pkg", "plugins"} {
		err := filepath.WalkDir(filepath.Join("..", "..", root), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, mode)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join("..", ".."), path)
			files[filepath.ToSlash(rel)] = f
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no sources found: run from internal/codeshape")
	}
	return fset, files
}

func TestFunctionLength(t *testing.T) {
	fset, files := sources(t, 0)
	for path, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if n > maxFuncLines {
				t.Errorf("%s: %s is %d lines (at most %d): split it into its steps", path, fn.Name.Name, n, maxFuncLines)
			}
		}
	}
}

func TestNetlinkOnlyBehindTheDoor(t *testing.T) {
	_, files := sources(t, parser.ImportsOnly)
	doors := 0
	for path, f := range files {
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, "github.com/vishvananda/netlink") {
				continue
			}
			if netlinkDoors[filepath.ToSlash(filepath.Dir(path))] {
				doors++
				continue
			}
			t.Errorf("%s imports %s: only %v may; use pkg/kernel's plain data", path, p, netlinkDoors)
		}
	}
	if doors == 0 {
		t.Error("no file of pkg/kernel or pkg/linkwait imports netlink: is the walk looking in the right place?")
	}
}
