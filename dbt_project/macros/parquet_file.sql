{#-
    A model written by one COPY of its query to a Parquet file under external_root
    (SKEWLESS_FEATURE_DIR), with a view over that file in the warehouse: what Feast reads as an
    offline source. dbt-duckdb's `external` materialization stores the rows as a table in the
    warehouse first and copies that table out; over feature tables of millions of rows the direct
    copy takes about half the time. An empty result still writes a file with the columns.
-#}
{% materialization parquet_file, adapter="duckdb" %}
  {%- set location = external_location(this, config) -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    copy ({{ compiled_code }}) to '{{ location }}' (format parquet)
  {%- endcall %}

  {% if existing_relation is not none and existing_relation.type != 'view' %}
    {{ drop_relation_if_exists(existing_relation) }}
  {% endif %}
  {% call statement('create_view') -%}
    create or replace view {{ target_relation }} as select * from read_parquet('{{ location }}')
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
