{#- The batch cutoff: var('features_as_of') if set, else midnight after the last event. -#}
{% macro features_as_of() -%}
{%- set as_of = var('features_as_of', '') -%}
{%- if as_of -%}
    cast('{{ as_of }}' as timestamp)
{%- else -%}
    (select date_trunc('day', max(event_timestamp)) + {{ interval_of(1, 'day') }} from {{ ref('stg_raw__transactions') }})
{%- endif -%}
{%- endmacro %}
