# What `brume devices` sees in this guest (JSON).
brume devices
