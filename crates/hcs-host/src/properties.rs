//! Documents the host writes about a system: `Properties` (HCS-API §7.6) and
//! `SystemExitStatus` (§7.10, rule 52), and the `SystemQuery` filter of enumeration.

use crate::lifecycle::{Life, StopCause};
use crate::plan::SystemSettings;
use hcs_engine::{EngineExit, Firmware, VmPlan};
use hcs_schema::{
    AttributionRecord, ExitInitiator, HResult, MemoryInformationForVm, MemoryStats,
    NotificationType, OsType, ProcessorStats, Properties, State, Statistics, SystemExit,
    SystemExitDetail, SystemExitStatus, SystemPropertyQuery, SystemPropertyType, SystemQuery,
    SystemType, VmMemory, WorkerExit, WorkerExitDetail, WorkerExitType,
};
use std::time::{Instant, SystemTime};

/// What a `Properties` document is made from.
pub(crate) struct Snapshot<'a> {
    pub id: &'a str,
    pub runtime_id: &'a str,
    pub settings: &'a SystemSettings,
    pub plan: &'a VmPlan,
    pub life: Life,
    pub exit_type: Option<&'static str>,
    pub started_at: Option<(Instant, SystemTime)>,
    /// CPU time the vCPUs used (zero unless statistics were asked for).
    pub cpu_time: std::time::Duration,
    /// The guest agent's protocol version and what it said of itself, once connected.
    pub guest: Option<(u32, serde_json::Value)>,
    /// The guest's processes, when `ProcessList` was asked for and an agent answered.
    pub process_list: Option<Vec<hcs_schema::ProcessDetails>>,
}

fn state(life: Life) -> State {
    match life {
        Life::Creating | Life::Created => State::Created,
        Life::Running => State::Running,
        Life::Paused => State::Paused,
        Life::Stopping | Life::Stopped | Life::Failed => State::Stopped,
    }
}

fn notification_type(name: &str) -> NotificationType {
    match name {
        "GracefulExit" => NotificationType::GracefulExit,
        "ForcedExit" => NotificationType::ForcedExit,
        "UnexpectedExit" => NotificationType::UnexpectedExit,
        _ => NotificationType::Unknown,
    }
}

/// The `Properties` document: basic properties always (`Id` and `SystemType` among them,
/// rule 22), plus each requested type this host can answer; the others are omitted.
pub(crate) fn document(snapshot: &Snapshot<'_>, query: Option<&SystemPropertyQuery>) -> String {
    let mut properties = Properties {
        id: Some(snapshot.id.to_owned()),
        system_type: Some(SystemType::VirtualMachine),
        name: Some(snapshot.id.to_owned()),
        owner: Some(snapshot.settings.owner.clone()),
        runtime_id: Some(snapshot.runtime_id.to_owned()),
        runtime_os_type: Some(match snapshot.plan.firmware {
            Firmware::Idle => OsType::Unknown,
            Firmware::LinuxDirect { .. } => OsType::Linux,
        }),
        state: Some(state(snapshot.life)),
        stopped: Some(matches!(snapshot.life, Life::Stopping | Life::Stopped)),
        exit_type: snapshot.exit_type.map(notification_type),
        ..Properties::default()
    };
    let wanted = query
        .and_then(|q| q.property_types.as_ref())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for kind in wanted {
        match kind {
            SystemPropertyType::Memory => {
                let assigned_mb = snapshot.plan.memory_mb;
                properties.memory = Some(MemoryInformationForVm {
                    virtual_node_count: Some(1),
                    virtual_machine_memory: Some(VmMemory {
                        // The empty VM has no balloon: everything is assigned, nothing is
                        // reported available by a guest.
                        assigned_memory: Some(assigned_mb),
                        reserved_memory: Some(0),
                        available_memory: Some(0),
                        available_memory_buffer: Some(0),
                        balancing_enabled: Some(false),
                        slp_active: Some(false),
                        dm_operation_in_progress: Some(false),
                    }),
                    virtual_nodes: None,
                });
            }
            SystemPropertyType::Statistics => {
                let now = SystemTime::now();
                let uptime = snapshot
                    .started_at
                    .map(|(at, _)| at.elapsed().as_nanos() / 100)
                    .unwrap_or(0);
                properties.statistics = Some(Statistics {
                    timestamp: Some(humantime::format_rfc3339_micros(now).to_string()),
                    container_start_time: snapshot
                        .started_at
                        .map(|(_, at)| humantime::format_rfc3339_micros(at).to_string()),
                    uptime100ns: Some(u64::try_from(uptime).unwrap_or(u64::MAX)),
                    processor: Some(ProcessorStats {
                        total_runtime100ns: Some((snapshot.cpu_time.as_nanos() / 100) as u64),
                        runtime_user100ns: None,
                        runtime_kernel100ns: None,
                    }),
                    memory: Some(MemoryStats {
                        memory_usage_commit_bytes: Some(snapshot.plan.memory_mb << 20),
                        memory_usage_commit_peak_bytes: Some(snapshot.plan.memory_mb << 20),
                        memory_usage_private_working_set_bytes: None,
                    }),
                    storage: None,
                });
            }
            SystemPropertyType::TerminateOnLastHandleClosed => {
                properties.terminate_on_last_handle_closed =
                    Some(snapshot.settings.terminate_on_last_handle_closed);
            }
            SystemPropertyType::GuestConnection => {
                if let Some((version, capabilities)) = &snapshot.guest {
                    properties.guest_connection_info = Some(hcs_schema::GuestConnectionInfo {
                        supported_schema_versions: Some(vec![hcs_schema::Version {
                            major: Some(2),
                            minor: Some(6),
                        }]),
                        protocol_version: Some(*version),
                        guest_defined_capabilities: Some(capabilities.clone()),
                    });
                }
            }
            SystemPropertyType::ProcessList => {
                properties.process_list = snapshot.process_list.clone();
            }
            // No shared memory yet: omitted (HCS-API §7.6).
            _ => {}
        }
    }
    serde_json::to_string(&properties).unwrap_or_else(|_| "{}".to_owned())
}

/// Whether a system passes a `SystemQuery`: AND across fields, OR within one field, an
/// absent or empty field does not filter (HCS-API §7.6).
pub(crate) fn matches_query(id: &str, owner: &str, query: Option<&SystemQuery>) -> bool {
    let Some(query) = query else {
        return true;
    };
    fn passes<T>(list: &Option<Vec<T>>, test: impl Fn(&T) -> bool) -> bool {
        match list {
            Some(items) if !items.is_empty() => items.iter().any(test),
            _ => true,
        }
    }
    passes(&query.ids, |i| i == id)
        && passes(&query.names, |n| n == id)
        && passes(&query.owners, |o| o == owner)
        && passes(&query.types, |t| *t == SystemType::VirtualMachine)
}

fn system_exit(detail: SystemExitDetail, initiator: ExitInitiator) -> AttributionRecord {
    AttributionRecord {
        system_exit: Some(SystemExit {
            detail: Some(detail),
            initiator: Some(initiator),
        }),
        ..AttributionRecord::default()
    }
}

fn worker_exit(kind: WorkerExitType, detail: WorkerExitDetail) -> AttributionRecord {
    AttributionRecord {
        worker_exit: Some(WorkerExit {
            exit_code: Some(0),
            r#type: Some(kind),
            detail: Some(detail),
            initiator: Some(ExitInitiator::GuestOS),
        }),
        ..AttributionRecord::default()
    }
}

/// The `SystemExitStatus` of a stop and its `ExitType` name (HCS-API rules 26 and 52).
pub(crate) fn exit_status(cause: &StopCause, stop_on_reset: bool) -> (String, &'static str) {
    let (status, exit_type, attribution) = match cause {
        StopCause::Terminate | StopCause::LastHandleClosed => (
            HResult::S_OK,
            NotificationType::ForcedExit,
            vec![system_exit(
                SystemExitDetail::Terminate,
                ExitInitiator::Client,
            )],
        ),
        StopCause::Guest(EngineExit::PowerOff) => (
            HResult::S_OK,
            NotificationType::GracefulExit,
            vec![system_exit(
                SystemExitDetail::Shutdown,
                ExitInitiator::GuestOS,
            )],
        ),
        StopCause::Guest(EngineExit::Reset) if stop_on_reset => (
            HResult::S_OK,
            NotificationType::GracefulExit,
            vec![
                system_exit(SystemExitDetail::Shutdown, ExitInitiator::GuestOS),
                worker_exit(WorkerExitType::StoppedOnReset, WorkerExitDetail::Reset),
            ],
        ),
        StopCause::Guest(EngineExit::Reset) => (
            // The built-in VMM cannot reboot in place yet: a reset without StopOnReset
            // ends the system rather than leaving a VM that does nothing.
            HResult::HCS_E_UNEXPECTED_EXIT,
            NotificationType::UnexpectedExit,
            vec![
                system_exit(SystemExitDetail::UnexpectedExit, ExitInitiator::GuestOS),
                worker_exit(WorkerExitType::ResetFailed, WorkerExitDetail::Reset),
            ],
        ),
        StopCause::Guest(EngineExit::TripleFault) => (
            HResult::HCS_E_UNEXPECTED_EXIT,
            NotificationType::UnexpectedExit,
            vec![
                system_exit(SystemExitDetail::UnexpectedExit, ExitInitiator::GuestOS),
                worker_exit(
                    WorkerExitType::UnexpectedStop,
                    WorkerExitDetail::TripleFault,
                ),
            ],
        ),
        StopCause::Guest(EngineExit::GuestPanic) => (
            HResult::HCS_E_GUEST_CRITICAL_ERROR,
            NotificationType::UnexpectedExit,
            vec![
                system_exit(SystemExitDetail::UnexpectedExit, ExitInitiator::GuestOS),
                worker_exit(WorkerExitType::UnexpectedStop, WorkerExitDetail::GuestCrash),
                AttributionRecord {
                    guest_crash: Some(hcs_schema::GuestCrash {
                        crash_parameters: Some(Vec::new()),
                    }),
                    ..AttributionRecord::default()
                },
            ],
        ),
        StopCause::Guest(EngineExit::ProcessDied(_)) => (
            HResult::HCS_E_UNEXPECTED_EXIT,
            NotificationType::UnexpectedExit,
            vec![
                system_exit(SystemExitDetail::UnexpectedExit, ExitInitiator::Internal),
                worker_exit(
                    WorkerExitType::UnexpectedStop,
                    WorkerExitDetail::ProcessUnexpectedExit,
                ),
            ],
        ),
        StopCause::Guest(EngineExit::Failed(_)) => (
            HResult::HCS_E_UNEXPECTED_EXIT,
            NotificationType::UnexpectedExit,
            vec![
                system_exit(SystemExitDetail::UnexpectedExit, ExitInitiator::Internal),
                worker_exit(
                    WorkerExitType::UnrecoverableError,
                    WorkerExitDetail::EmulatorError,
                ),
            ],
        ),
    };
    let name = match exit_type {
        NotificationType::GracefulExit => "GracefulExit",
        NotificationType::ForcedExit => "ForcedExit",
        _ => "UnexpectedExit",
    };
    let document = SystemExitStatus {
        status: Some(status.0),
        exit_type: Some(exit_type),
        attribution: Some(attribution),
    };
    (
        serde_json::to_string(&document).unwrap_or_else(|_| "{}".to_owned()),
        name,
    )
}

/// The `SystemExitStatus` of a system whose worker process (in the service) ended without
/// stopping it: an `UnexpectedExit` attributed to the host, with `HCS_E_UNEXPECTED_EXIT`.
pub fn worker_lost_exit_status() -> String {
    let document = SystemExitStatus {
        status: Some(HResult::HCS_E_UNEXPECTED_EXIT.0),
        exit_type: Some(NotificationType::UnexpectedExit),
        attribution: Some(vec![
            system_exit(SystemExitDetail::UnexpectedExit, ExitInitiator::Internal),
            worker_exit(
                WorkerExitType::UnexpectedStop,
                WorkerExitDetail::ProcessUnexpectedExit,
            ),
        ]),
    };
    serde_json::to_string(&document).unwrap_or_else(|_| "{}".to_owned())
}
