"""create tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 10:37:13.596501
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('appointments_cache',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=False),
    sa.Column('service_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'[]'"), nullable=False),
    sa.Column('appointment_datetime', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attendance', sa.SmallInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments_cache'))
    )
    op.create_index('ix_appointments_company_client_dt', 'appointments_cache', ['company_id', 'client_id', 'appointment_datetime'], unique=False)
    op.create_index('ix_appointments_company_dt', 'appointments_cache', ['company_id', 'appointment_datetime'], unique=False)
    op.create_table('bookings',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=True),
    sa.Column('client_phone', sa.Text(), nullable=True),
    sa.Column('datetime', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bookings'))
    )
    op.create_index('ix_bookings_company_client_datetime', 'bookings', ['company_id', 'client_id', 'datetime'], unique=False)
    op.create_index('ix_bookings_company_created', 'bookings', ['company_id', 'created_at'], unique=False)
    op.create_index('ix_bookings_company_phone_datetime', 'bookings', ['company_id', 'client_phone', 'datetime'], unique=False)
    op.create_table('campaign_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('run_date', sa.Date(), nullable=False),
    sa.Column('status', sa.Text(), server_default='planned', nullable=False),
    sa.Column('trigger', sa.Text(), server_default='beat', nullable=False),
    sa.Column('dry_run', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('due_count', sa.Integer(), nullable=True),
    sa.Column('claimed_count', sa.Integer(), nullable=True),
    sa.Column('holdout_count', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_runs')),
    sa.UniqueConstraint('company_id', 'run_date', name='uq_campaign_runs_company_date')
    )
    op.create_table('client_personalized_intervals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=False),
    sa.Column('service_id', sa.BigInteger(), nullable=False),
    sa.Column('personal_interval_days', sa.Integer(), nullable=False),
    sa.Column('visit_count', sa.Integer(), nullable=False),
    sa.Column('consistency_score', sa.Numeric(precision=3, scale=2), nullable=True),
    sa.Column('last_calculated', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_personalized_intervals')),
    sa.UniqueConstraint('company_id', 'client_id', 'service_id', name='uq_personal_intervals_company_client_service')
    )
    op.create_table('clients',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('phone', sa.Text(), nullable=True),
    sa.Column('last_visit_date', sa.Date(), nullable=True),
    sa.Column('visit_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_services', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'[]'"), nullable=False),
    sa.Column('total_spent', sa.Numeric(precision=12, scale=2), server_default='0', nullable=False),
    sa.Column('blacklisted', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('favorite_staff_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'[]'"), nullable=False),
    sa.Column('preferred_time_slots', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'[]'"), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clients'))
    )
    op.create_index('ix_clients_company_last_visit', 'clients', ['company_id', 'last_visit_date'], unique=False)
    op.create_index('ix_clients_company_phone', 'clients', ['company_id', 'phone'], unique=False)
    op.create_table('companies',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.Text(), server_default='', nullable=False),
    sa.Column('timezone', sa.Text(), server_default='Europe/Moscow', nullable=False),
    sa.Column('country', sa.Text(), server_default='RU', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_companies'))
    )
    op.create_table('industry_standard_intervals',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('category_key', sa.Text(), nullable=False),
    sa.Column('category_name', sa.Text(), nullable=False),
    sa.Column('interval_days', sa.Integer(), nullable=False),
    sa.Column('min_days', sa.Integer(), nullable=True),
    sa.Column('max_days', sa.Integer(), nullable=True),
    sa.Column('keywords', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('service_type', sa.Text(), nullable=True),
    sa.Column('confidence_score', sa.Numeric(precision=3, scale=2), server_default='0.75', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_industry_standard_intervals')),
    sa.UniqueConstraint('category_key', name=op.f('uq_industry_standard_intervals_category_key'))
    )
    op.create_table('reactivation_consents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('phone', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), server_default='whatsapp', nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('text_version', sa.Text(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reactivation_consents'))
    )
    op.create_index('ix_consents_company_phone_channel', 'reactivation_consents', ['company_id', 'phone', 'channel'], unique=False)
    op.create_table('reactivation_opt_outs',
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('phone', sa.Text(), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.Text(), server_default='reply', nullable=False),
    sa.Column('reason_text', sa.Text(), nullable=True),
    sa.Column('history_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('company_id', 'phone', name=op.f('pk_reactivation_opt_outs'))
    )
    op.create_table('service_reactivation_intervals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('service_id', sa.BigInteger(), nullable=False),
    sa.Column('service_name', sa.Text(), nullable=True),
    sa.Column('median_interval_days', sa.Integer(), nullable=False),
    sa.Column('avg_interval_days', sa.Integer(), nullable=True),
    sa.Column('min_interval_days', sa.Integer(), nullable=True),
    sa.Column('max_interval_days', sa.Integer(), nullable=True),
    sa.Column('stddev_days', sa.Numeric(precision=7, scale=2), nullable=True),
    sa.Column('sample_size', sa.Integer(), nullable=False),
    sa.Column('last_calculated', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_reactivation_intervals')),
    sa.UniqueConstraint('company_id', 'service_id', name='uq_service_intervals_company_service')
    )
    op.create_index('ix_service_intervals_lookup', 'service_reactivation_intervals', ['company_id', 'service_id', 'is_active'], unique=False)
    op.create_table('services',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('yclients_id', sa.BigInteger(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_services')),
    sa.UniqueConstraint('company_id', 'yclients_id', name='uq_services_company_yclients')
    )
    op.create_table('client_reactivation_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.BigInteger(), nullable=False),
    sa.Column('campaign_run_id', sa.BigInteger(), nullable=True),
    sa.Column('phone', sa.Text(), nullable=True),
    sa.Column('step', sa.SmallInteger(), nullable=False),
    sa.Column('message_type', sa.Text(), nullable=False),
    sa.Column('campaign', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), server_default='claimed', nullable=False),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('send_after', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dry_run', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('message_sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_text', sa.Text(), nullable=True),
    sa.Column('generator', sa.Text(), nullable=True),
    sa.Column('variant', sa.Text(), nullable=True),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('generator_fallback_reason', sa.Text(), nullable=True),
    sa.Column('provider', sa.Text(), nullable=True),
    sa.Column('provider_message_id', sa.Text(), nullable=True),
    sa.Column('sending_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_service_id', sa.BigInteger(), nullable=True),
    sa.Column('last_service_name', sa.Text(), nullable=True),
    sa.Column('inactive_days', sa.Integer(), nullable=False),
    sa.Column('last_visit_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('interval_days', sa.Integer(), nullable=False),
    sa.Column('interval_source', sa.Text(), nullable=False),
    sa.Column('confidence_score', sa.Numeric(precision=3, scale=2), nullable=True),
    sa.Column('interval_evidence', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('context_saved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('context_error', sa.Text(), nullable=True),
    sa.Column('response_received', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('response_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response_type', sa.Text(), nullable=True),
    sa.Column('response_text', sa.Text(), nullable=True),
    sa.Column('booking_created', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('booking_id', sa.BigInteger(), nullable=True),
    sa.Column('booking_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flow_stopped_reason', sa.Text(), nullable=True),
    sa.Column('anonymized_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.ForeignKeyConstraint(['campaign_run_id'], ['campaign_runs.id'], name=op.f('fk_client_reactivation_history_campaign_run_id_campaign_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_reactivation_history')),
    )
    op.create_index('uq_history_client_lapse_step', 'client_reactivation_history', ['company_id', 'client_id', 'last_visit_date', 'step'], unique=True, postgresql_where=sa.text('NOT dry_run'), sqlite_where=sa.text('NOT dry_run'))
    op.create_index('ix_history_client_sent', 'client_reactivation_history', ['client_id', 'message_sent_at'], unique=False)
    op.create_index('ix_history_company_client_created', 'client_reactivation_history', ['company_id', 'client_id', 'created_at'], unique=False)
    op.create_index('ix_history_company_phone_sent', 'client_reactivation_history', ['company_id', 'phone', 'message_sent_at'], unique=False)
    op.create_index('ix_history_company_response_booking', 'client_reactivation_history', ['company_id', 'response_received', 'booking_created', 'message_sent_at'], unique=False)
    op.create_index('ix_history_company_status_updated', 'client_reactivation_history', ['company_id', 'status', 'updated_at'], unique=False)
    op.create_index('ix_history_run', 'client_reactivation_history', ['campaign_run_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_history_run', table_name='client_reactivation_history')
    op.drop_index('uq_history_client_lapse_step', table_name='client_reactivation_history')
    op.drop_index('ix_history_company_status_updated', table_name='client_reactivation_history')
    op.drop_index('ix_history_company_response_booking', table_name='client_reactivation_history')
    op.drop_index('ix_history_company_phone_sent', table_name='client_reactivation_history')
    op.drop_index('ix_history_company_client_created', table_name='client_reactivation_history')
    op.drop_index('ix_history_client_sent', table_name='client_reactivation_history')
    op.drop_table('client_reactivation_history')
    op.drop_table('services')
    op.drop_index('ix_service_intervals_lookup', table_name='service_reactivation_intervals')
    op.drop_table('service_reactivation_intervals')
    op.drop_table('reactivation_opt_outs')
    op.drop_index('ix_consents_company_phone_channel', table_name='reactivation_consents')
    op.drop_table('reactivation_consents')
    op.drop_table('industry_standard_intervals')
    op.drop_table('companies')
    op.drop_index('ix_clients_company_phone', table_name='clients')
    op.drop_index('ix_clients_company_last_visit', table_name='clients')
    op.drop_table('clients')
    op.drop_table('client_personalized_intervals')
    op.drop_table('campaign_runs')
    op.drop_index('ix_bookings_company_phone_datetime', table_name='bookings')
    op.drop_index('ix_bookings_company_created', table_name='bookings')
    op.drop_index('ix_bookings_company_client_datetime', table_name='bookings')
    op.drop_table('bookings')
    op.drop_index('ix_appointments_company_dt', table_name='appointments_cache')
    op.drop_index('ix_appointments_company_client_dt', table_name='appointments_cache')
    op.drop_table('appointments_cache')
