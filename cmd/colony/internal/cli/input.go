package cli

import (
	"fmt"
	"io"
	"os"
)

// ReadFileFlag reads the file a command's -f flag names, "-" meaning
// stdin, and returns its content and how errors should name it ("WHAT from
// stdin", or the file). what says what the file holds ("policies").
func (e *Env) ReadFileFlag(file, what string) (data []byte, source string, err error) {
	source = file
	if file == "-" {
		source = what + " from stdin"
		data, err = io.ReadAll(e.In)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, source, fmt.Errorf("reading the %s: %w", what, err)
	}
	return data, source, nil
}
