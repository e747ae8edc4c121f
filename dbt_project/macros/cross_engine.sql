{#-
    The SQL that differs between engines, dispatched on the adapter (adapter.dispatch):
    duckdb__ is the embedded warehouse, default__ is standard SQL as PostgreSQL runs it
    (tests/dbt/test_postgres.py holds the two equal), spark__ is Spark SQL
    (tests/dbt/test_spark.py). Another engine (Trino, Snowflake) needs only its own <adapter>__
    variants where its SQL differs from default__.
    The duckdb__ variants must not call other macros: the property test
    (tests/skewless/test_feature_equivalence.py) renders them with plain Jinja.
-#}

{#- An interval of n units (microsecond, second, day). -#}
{% macro interval_of(n, unit) -%}
    {{ return(adapter.dispatch('interval_of', 'skewless')(n, unit)) }}
{%- endmacro %}

{% macro duckdb__interval_of(n, unit) -%}
    to_{{ unit }}s({{ n }})
{%- endmacro %}

{% macro default__interval_of(n, unit) -%}
    interval '{{ n }} {{ unit }}s'
{%- endmacro %}

{#- end - start in seconds, to the microsecond, as a double. -#}
{% macro seconds_between(start, end) -%}
    {{ return(adapter.dispatch('seconds_between', 'skewless')(start, end)) }}
{%- endmacro %}

{% macro duckdb__seconds_between(start, end) -%}
    date_diff('microsecond', {{ start }}, {{ end }}) / 1e6
{%- endmacro %}

{% macro default__seconds_between(start, end) -%}
    cast(extract(epoch from ({{ end }} - {{ start }})) as double precision)
{%- endmacro %}

{% macro spark__seconds_between(start, end) -%}
    (unix_micros({{ end }}) - unix_micros({{ start }})) / 1e6
{%- endmacro %}

{#- An 8-byte float (dbt.type_float() is a 4-byte float on DuckDB). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'skewless')()) }}
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}

{#- The smallest integer type (a 0/1 label). -#}
{% macro type_small_int() -%}
    {{ return(adapter.dispatch('type_small_int', 'skewless')()) }}
{%- endmacro %}

{% macro duckdb__type_small_int() -%}
    tinyint
{%- endmacro %}

{% macro default__type_small_int() -%}
    smallint
{%- endmacro %}

{#- In a select list with group by: one row per midnight from start to end, inclusive. -#}
{% macro day_series(start, end) -%}
    {{ return(adapter.dispatch('day_series', 'skewless')(start, end)) }}
{%- endmacro %}

{% macro duckdb__day_series(start, end) -%}
    unnest(generate_series({{ start }}, {{ end }}, interval 1 day))
{%- endmacro %}

{% macro default__day_series(start, end) -%}
    generate_series({{ start }}, {{ end }}, interval '1 day')
{%- endmacro %}

{% macro spark__day_series(start, end) -%}
    explode(sequence({{ start }}, {{ end }}, interval 1 day))
{%- endmacro %}

{#- `expr` (a timestamp) rounded down to a multiple of `seconds` since the epoch, exactly. -#}
{% macro floor_to(expr, seconds) -%}
    {{ return(adapter.dispatch('floor_to', 'skewless')(expr, seconds)) }}
{%- endmacro %}

{% macro duckdb__floor_to(expr, seconds) -%}
    make_timestamp(epoch_us({{ expr }})
        - ((epoch_us({{ expr }}) % {{ seconds * 1000000 }}) + {{ seconds * 1000000 }}) % {{ seconds * 1000000 }})
{%- endmacro %}

{% macro default__floor_to(expr, seconds) -%}
    date_bin(interval '{{ seconds }} seconds', {{ expr }}, timestamp '1970-01-01')
{%- endmacro %}

{% macro spark__floor_to(expr, seconds) -%}
    timestamp_micros(unix_micros({{ expr }}) - pmod(unix_micros({{ expr }}), {{ seconds * 1000000 }}))
{%- endmacro %}

{#-
    The end of a window frame that leaves out the current row, over rows ordered by a tile's
    start (one row per tile and entity, tiles `hop` seconds apart).
    Standard SQL, without EXCLUDE: the previous tile starts a hop before. Under EXCLUDE,
    PostgreSQL recomputes a frame's aggregates from scratch on every row (quadratic in an entity's
    rows for a frame from the partition's start); with an offset it keeps adding. DuckDB handles
    EXCLUDE without that cost.
-#}
{% macro before_current_tile(hop) -%}
    {{ return(adapter.dispatch('before_current_tile', 'skewless')(hop)) }}
{%- endmacro %}

{% macro duckdb__before_current_tile(hop) -%}
    current row exclude current row
{%- endmacro %}

{% macro default__before_current_tile(hop) -%}
    interval '{{ hop }} seconds' preceding
{%- endmacro %}

{#-
    The end of a window frame that leaves out the current row and its ties, over rows ordered by
    a timestamp (microseconds): the rows a microsecond or more before, in standard SQL (no
    EXCLUDE, as above).
-#}
{% macro before_peers() -%}
    {{ return(adapter.dispatch('before_peers', 'skewless')()) }}
{%- endmacro %}

{% macro duckdb__before_peers() -%}
    current row exclude group
{%- endmacro %}

{% macro default__before_peers() -%}
    interval '1 microseconds' preceding
{%- endmacro %}

{#-
    Every row of `points` (its point_columns, the first two entity_id and event_timestamp) with,
    for each of step_columns, the sum of that column over the rows of `steps` (entity_id, ts,
    step_columns) of the same entity with ts <= event_timestamp. Null or 0 when there are none.
    Both variants are O(n log n) in points + steps.
-#}
{% macro running_sums_at(points, point_columns, steps, step_columns) -%}
    {{ return(adapter.dispatch('running_sums_at', 'skewless')(points, point_columns, steps, step_columns)) }}
{%- endmacro %}

{#- DuckDB: running sums of the steps, read at each point by an ASOF join. -#}
{% macro duckdb__running_sums_at(points, point_columns, steps, step_columns) -%}
    select
        {% for c in point_columns %}p.{{ c }}, {% endfor %}
        {%- for c in step_columns %}
        r.{{ c }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ points }} as p
    asof left join (
        select entity_id, ts,
            {%- for c in step_columns %}
            sum({{ c }}) over running as {{ c }}{{ "," if not loop.last }}
            {%- endfor %}
        from {{ steps }}
        window running as (partition by entity_id order by ts rows unbounded preceding)
    ) as r
        on p.entity_id = r.entity_id and p.event_timestamp >= r.ts
{%- endmacro %}

{#- Standard SQL: points and steps in one stream, steps before points at equal times, and a
    running sum over it. -#}
{% macro default__running_sums_at(points, point_columns, steps, step_columns) -%}
    select {{ point_columns | join(', ') }}, {{ step_columns | join(', ') }}
    from (
        select {{ point_columns | join(', ') }}, is_point,
            {%- for c in step_columns %}
            sum({{ c }}) over running as {{ c }}{{ "," if not loop.last }}
            {%- endfor %}
        from (
            select {{ point_columns | join(', ') }}, 1 as is_point
                {%- for c in step_columns %}, 0 as {{ c }}{% endfor %}
            from {{ points }}
            union all
            select entity_id, ts
                {%- for c in point_columns[2:] %}, null{% endfor %}, 0
                {%- for c in step_columns %}, {{ c }}{% endfor %}
            from {{ steps }}
        ) as merged
        window running as (
            partition by entity_id order by event_timestamp, is_point rows unbounded preceding
        )
    ) as read
    where is_point = 1
{%- endmacro %}

{#- The columns of `relation` but `except`, each prefixed with `alias.`: DuckDB's `* exclude`. -#}
{% macro star_except(alias, relation, except) -%}
    {{ return(adapter.dispatch('star_except', 'skewless')(alias, relation, except)) }}
{%- endmacro %}

{% macro duckdb__star_except(alias, relation, except) -%}
    {{ alias }}.* exclude ({{ except | join(', ') }})
{%- endmacro %}

{% macro default__star_except(alias, relation, except) -%}
    {%- set names = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if column.name | lower not in except -%}
                {%- do names.append(alias ~ '.' ~ adapter.quote(column.name)) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ names | join(', ') if names else alias ~ '.*' }}
{%- endmacro %}

{#- For each row of `points` (entity_id, event_timestamp), the entity's first event at or after
    event_timestamp in `events` (entity_id, event_timestamp) as next_event_at. -#}
{% macro next_event_at(points, events) -%}
    {{ return(adapter.dispatch('next_event_at', 'skewless')(points, events)) }}
{%- endmacro %}

{% macro duckdb__next_event_at(points, events) -%}
    select p.entity_id, p.event_timestamp, e.event_timestamp as next_event_at
    from {{ points }} as p
    asof left join {{ events }} as e
        on p.entity_id = e.entity_id and p.event_timestamp <= e.event_timestamp
{%- endmacro %}

{% macro default__next_event_at(points, events) -%}
    select entity_id, event_timestamp, next_event_at
    from (
        select entity_id, event_timestamp, is_point,
            min(event_at) over (
                partition by entity_id order by event_timestamp, is_point desc
                rows between current row and unbounded following
            ) as next_event_at
        from (
            select entity_id, event_timestamp, 1 as is_point, null as event_at from {{ points }}
            union all
            select entity_id, event_timestamp, 0, event_timestamp from {{ events }}
        ) as merged
    ) as read
    where is_point = 1
{%- endmacro %}
