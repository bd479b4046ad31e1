package deploy_test

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(podInitEnv); spec != "" {
		podInit(spec) // does not return
	}
	code := m.Run()
	if builtImage.dir != "" {
		os.RemoveAll(builtImage.dir)
	}
	os.Exit(code)
}
