"""The worker side: boot (entrypoint), actors declared from the job types (actors), running one job or
a batch (execution), the job lifecycle (middleware), the job types' resources (resources), and the
scheduler. The job types themselves, handlers included, live in core's feature packages."""
