//! havn-ipc tests over real socketpairs, in-process and across two processes.
mod inproc;
mod twoproc;
