"""Scheduler answers for tests/test_schedulers*.py, in the forms their documentation gives
(each says where its form comes from); the parsers read them as they would a host's."""

# ---------------------------------------------------------------------------------------------
# Grid Engine: qstat -xml -r -u USER, in the form of Grid Engine's qstat.xsd (queue_info holds
# the running jobs, job_info the pending ones; -r adds full_job_name and hard_request)
QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>42</JB_job_number>
      <JAT_prio>0.55500</JAT_prio>
      <JB_name>fabjupyter-default</JB_name>
      <JB_owner>alice</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-12-06T04:10:11</JAT_start_time>
      <queue_name>all.q@node1</queue_name>
      <slots>1</slots>
      <full_job_name>fabjupyter-default</full_job_name>
      <hard_request name="h_rt" resource_contribution="0.000000">3600</hard_request>
    </job_list>
    <job_list state="running">
      <JB_job_number>45</JB_job_number>
      <JAT_prio>0.55500</JAT_prio>
      <JB_name>fabjupyter-gpu</JB_name>
      <JB_owner>alice</JB_owner>
      <state>dr</state>
      <JAT_start_time>2026-12-06T04:00:00</JAT_start_time>
      <queue_name>gpu.q@node2.cluster.example.org</queue_name>
      <slots>1</slots>
      <full_job_name>fabjupyter-gpu</full_job_name>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>43</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>fabjupyter-other</JB_name>
      <JB_owner>alice</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-12-06T04:10:09</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>fabjupyter-other</full_job_name>
    </job_list>
    <job_list state="pending">
      <JB_job_number>44</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>fabjupyter-default</JB_name>
      <JB_owner>alice</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-12-06T04:10:09</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>fabjupyter-default</full_job_name>
    </job_list>
  </job_info>
</job_info>
"""
EMPTY_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
  </queue_info>
  <job_info>
  </job_info>
</job_info>
"""

# ---------------------------------------------------------------------------------------------
# PBS. Torque's qstat -f (Torque 6's manual: 4-space indented "key = value", long values
# continued on lines starting with a tab); SLURM's Torque wrapper (slurm-wlm-torque 22.05's
# qstat: "Job Id:\t57", tab-indented lines, the job's start as mtime); PBS Pro's
# qstat -f -F json (PBS Professional Reference Guide: "Jobs" keyed by the full id, resources
# as nested objects). No PBS Pro is installable here: its JSON is covered by these samples only.
TORQUE = """Job Id: 123.server.example.org
    Job_Name = fabjupyter-default
    Job_Owner = alice@login.example.org
    resources_used.cput = 00:00:01
    resources_used.mem = 51200kb
    resources_used.walltime = 00:10:00
    job_state = R
    queue = batch
    server = server.example.org
    ctime = Sun Dec  6 04:00:00 2026
    exec_host = node1/0+node1/1
    Join_Path = oe
    mtime = Sun Dec  6 04:00:05 2026
    Output_Path = login.example.org:/dev/null
    Resource_List.nodes = 1:ppn=2
    Resource_List.walltime = 01:00:00
    Variable_List = PBS_O_QUEUE=batch,PBS_O_HOME=/home/alice,PBS_O_LOGNAME=al
\tice,PBS_O_PATH=/usr/bin:/bin,PBS_O_SHELL=/bin/bash
    euser = alice
    start_time = 1796529605

Job Id: 124.server.example.org
    Job_Name = fabjupyter-default
    Job_Owner = alice@login.example.org
    job_state = C
    queue = batch
    exit_status = 271
    Resource_List.walltime = 01:00:00
"""
WRAPPER = ("Job Id:\t57\n\tJob_Name = fabjupyter-default\n\tJob_Owner = alice@login\n\tjob_state = R\n\tqueue = debug\n"
           "\tqtime = Sun Dec  6 04:10:09 2026\n\tmtime = Sun Dec  6 04:10:11 2026\n\texec_host = node1/1\n"
           "\tPriority = 4294901759\n\teuser = alice(1001)\n\tegroup = alice(1001)\n"
           "\tResource_List.walltime = 00:10:00\n\tResource_List.nodect = 1\n\tResource_List.ncpus = 1\n\n"
           "Job Id:\t58\n\tJob_Name = fabjupyter-default\n\tJob_Owner = alice@login\n\tjob_state = Q\n\tqueue = debug\n"
           "\tqtime = Sun Dec  6 04:10:09 2026\n\tResource_List.walltime = 00:10:00\n\n")
PBSPRO_JSON = """{
    "timestamp":1796530211,
    "pbs_version":"2022.1.0",
    "pbs_server":"server",
    "Jobs":{
        "123.server":{
            "Job_Name":"fabjupyter-default",
            "Job_Owner":"alice@login",
            "resources_used":{"cpupercent":0, "cput":"00:00:00", "mem":"0kb", "ncpus":2, "vmem":"0kb", "walltime":"00:10:00"},
            "job_state":"R",
            "queue":"workq",
            "server":"server",
            "exec_host":"node1/0*2",
            "exec_vnode":"(node1:ncpus=2)",
            "Resource_List":{"ncpus":2, "nodect":1, "place":"pack", "select":"1:ncpus=2", "walltime":"01:00:00"},
            "stime":"Sun Dec  6 04:00:05 2026",
            "comment":"Job run at Sun Dec 06 at 04:00 on (node1:ncpus=2)",
            "substate":42
        },
        "124.server":{
            "Job_Name":"fabjupyter-default",
            "Job_Owner":"alice@login",
            "job_state":"Q",
            "queue":"workq",
            "Resource_List":{"ncpus":64, "nodect":1, "select":"1:ncpus=64", "walltime":"01:00:00"},
            "comment":"Not Running: Insufficient amount of resource: ncpus "
        },
        "125.server":{
            "Job_Name":"fabjupyter-default",
            "job_state":"F",
            "Exit_status":-29,
            "comment":"Job run at Sun Dec 06 at 03:00 on (node1:ncpus=2) and finished",
            "Resource_List":{"walltime":"01:00:00"}
        }
    }
}"""

JSON_GONE = '{"timestamp":1796530211, "pbs_version":"2022.1.0", "pbs_server":"server"}'

# SLURM's words while slurmctld does not answer (slurm_strerror's text)
TIMED_OUT = ("", "slurm_load_jobs error: Socket timed out on send/recv operation\n", 1)
