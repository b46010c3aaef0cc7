package coordinator

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrDataDirInUse is returned by New when another process runs a node on
// the same data directory.
var ErrDataDirInUse = errors.New("coordinator: data dir in use by another process")

// lockFileName is the file in a data dir whose lock marks the dir in use;
// it holds the pid of the process that holds the lock.
const lockFileName = "colony.lock"

// dataDir is a node's data directory, held for the life of the node: it
// is locked against a second process, and knows which directories this
// start created, so that a start that fails can remove them.
type dataDir struct {
	path    string
	created []string // directories made by open, outermost first
	lock    *os.File
}

// openDataDir creates dir (and its snapshots directory) where missing and
// locks it. It fails with ErrDataDirInUse when another process holds the
// lock, naming that process's pid where known.
func openDataDir(dir string) (*dataDir, error) {
	d := &dataDir{path: dir}
	for _, p := range []string{dir, filepath.Join(dir, "snapshots")} {
		if err := d.mkdirAll(p); err != nil {
			d.remove()
			return nil, fmt.Errorf("creating data dir: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		d.remove()
		return nil, fmt.Errorf("opening data dir lock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		d.remove()
		return nil, fmt.Errorf("locking data dir %s: %w", dir, err)
	}
	if !held {
		holder := ""
		if b, err := os.ReadFile(f.Name()); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		f.Close()
		return nil, fmt.Errorf("%w: %s is locked by another process%s; stop it, or give this node a data dir of its own", ErrDataDirInUse, dir, holder)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0) // for the message above; the lock is what counts
	}
	d.lock = f
	return d, nil
}

// mkdirAll is os.MkdirAll that records the directories it made.
func (d *dataDir) mkdirAll(p string) error {
	var missing []string
	for q := filepath.Clean(p); ; q = filepath.Dir(q) {
		if _, err := os.Stat(q); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, q)
		if filepath.Dir(q) == q {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		d.created = append(d.created, missing[i])
	}
	return nil
}

// unlock releases the data dir to other processes.
func (d *dataDir) unlock() error {
	if d == nil || d.lock == nil {
		return nil
	}
	err := d.lock.Close() // closing the file releases its lock
	d.lock = nil
	return err
}

// remove unlocks the dir and deletes the directories this start created,
// for a start that failed. The outermost one created goes with everything
// in it (nothing in it predates this start); a snapshots directory made in
// an existing data dir goes only while empty.
func (d *dataDir) remove() {
	if d == nil {
		return
	}
	d.unlock()
	if len(d.created) == 0 {
		return
	}
	top := d.created[0]
	if top == filepath.Join(filepath.Clean(d.path), "snapshots") {
		os.Remove(top) // made in a data dir that existed
		return
	}
	os.RemoveAll(top) // the data dir, or a parent made for it
}
