// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3 (the module's own main
// package lives in the repository root module, which cannot be required from outside).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
